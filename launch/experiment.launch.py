"""
ros2 launch dexmpc_ros experiment.launch.py experiment:=<name> [output_dir:=DIR]

Builds the same graph as ``dexmpc up <name>`` through the same spec-to-nodes function
(:func:`dexmpc_ros.runtime.experiment.node_descriptions`), so the two cannot drift.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dexmpc_ros.runtime.experiment import load_experiment, node_descriptions
from dexmpc_ros.runtime.runner import default_run_dir


def _nodes(context, *args, **kwargs):
    name = LaunchConfiguration('experiment').perform(context)
    output_dir = LaunchConfiguration('output_dir').perform(context)
    experiment = load_experiment(name)
    run_dir = output_dir or str(default_run_dir(experiment))
    return [
        Node(package='dexmpc_ros', executable=d.executable, name=d.name,
             parameters=[d.parameters], output='screen', emulate_tty=True)
        for d in node_descriptions(experiment, run_dir)
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('experiment', default_value='hand_pddm_valve_sim',
                              description='experiment name (config/experiments/<name>.yaml)'),
        DeclareLaunchArgument('output_dir', default_value='',
                              description='run folder (default runs/<time>-<name>); '
                                          'bag in <output_dir>/bag'),
        OpaqueFunction(function=_nodes),
    ])
