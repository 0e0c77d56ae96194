"""CLI verbs, one module per room; each exposes `register(subparsers)`.

A verb's handler takes the parsed `args` and returns an exit code. User mistakes are raised as
`scheduler.errors.UserError` (or any `SchedulerError`) and printed by `scheduler.cli` as one line.
"""
