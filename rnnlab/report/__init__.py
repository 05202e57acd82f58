"""Views of a results folder: the terminal table, the comparison of two folders, the HTML page."""
