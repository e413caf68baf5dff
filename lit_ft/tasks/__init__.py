"""Built-in task plugins, registered through the `lit_ft.tasks` entry-point group like any other plugin."""
