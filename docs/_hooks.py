"""Build hook: the interactive periodic table (``icontorch table --html``), generated from the
method registry into the site as ``periodic-table.html`` at every build."""

from mkdocs.structure.files import File

from icontorch.table_html import html_page


def on_files(files, config, **kwargs):
    files.append(File.generated(config, "periodic-table.html", content=html_page()))
    return files
