"""Build hooks.

* The interactive periodic table (``icontorch table --html``) is generated from the method registry
  into the site as ``periodic-table.html`` at every build; each method links to its API reference.
* The gallery's examples run in this process with one torch thread: they are small, one thread is
  fastest for them, and it keeps the build's time independent of how busy the machine is (several
  threads on a loaded machine can take many times longer).
"""

import torch
from mkdocs.structure.files import File

from icontorch.table_html import html_page

torch.set_num_threads(1)


def on_files(files, config, **kwargs):
    files.append(File.generated(config, "periodic-table.html", content=html_page(reference="reference/methods/")))
    return files
