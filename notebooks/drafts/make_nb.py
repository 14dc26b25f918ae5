"""Percent-format .py -> .ipynb (cells split on '# %%'; '# %% [markdown]' and '# %% [parameters]')."""
import sys, re, nbformat
src = open(sys.argv[1]).read()
cells = []
for chunk in re.split(r"^# %%", src, flags=re.M)[1:]:
    header, _, body = chunk.partition("\n")
    body = body.strip("\n")
    if "[markdown]" in header:
        text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.splitlines())
        cells.append(nbformat.v4.new_markdown_cell(text))
    else:
        c = nbformat.v4.new_code_cell(body)
        if "parameters" in header:
            c.metadata["tags"] = ["parameters"]
        cells.append(c)
nb = nbformat.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
m = re.search(r"^# course-writes: (.+)$", src, flags=re.M)
if m:
    nb.metadata["course"] = {"writes": [w.strip() for w in m.group(1).split(",")]}
nbformat.write(nb, sys.argv[2])
