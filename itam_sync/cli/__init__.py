"""The command line: one module per command group, `common` for shared options, `main` registers them.

Command modules import `common`, never each other. May import every other package.
"""
