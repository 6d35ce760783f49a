"""Sphinx extension of the companion book: no page carries a script that points at the network.

Jupyter Book always adds sphinx-thebe, whose inline script names a CDN URL for the live-code
button this book does not offer (it is read offline); the script is dropped from every page.
"""


def _drop_network_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = [js for js in scripts
                                   if "THEBE_JS_URL" not in str(getattr(js, "attributes", {}).get("body", ""))]


def setup(app):
    app.connect("html-page-context", _drop_network_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
