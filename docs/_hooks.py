"""Build hook: write the interactive periodic table into the site (icontorch table --html)."""

import os

from icontorch.table_html import write_html


def on_post_build(config, **kwargs):
    write_html(os.path.join(config["site_dir"], "periodic-table.html"))
