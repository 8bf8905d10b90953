"""One module per `dispenser` subcommand.

Each module defines `add_arguments(parser)` and `run(args, settings) -> int`. The CLI
imports only the module of the command being run, so `dispenser --help` stays fast and a
board without a display never imports what it does not need. A command listed in
`dispenser.cli.COMMANDS` whose module does not exist yet answers "not available yet".
"""
