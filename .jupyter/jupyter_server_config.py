# `make lab` starts JupyterLab with this file: every notebook is cleaned by nbdev before it is saved (the metadata
# JupyterLab adds on opening, execution counts), so opening, running and closing a notebook leaves `git status`
# clean of such noise. It acts only because settings.ini says `jupyter_hooks = True`.
def nbdev_clean_jupyter(model, path, contents_manager=None, **kwargs):
    import os
    try: from nbdev.clean import clean_jupyter
    except ModuleNotFoundError: return
    root = getattr(contents_manager, 'root_dir', None)     # Jupyter's path is relative to its root (nbs/)
    clean_jupyter(path=os.path.join(root, path) if root else path, model=model, **kwargs)

c.ContentsManager.pre_save_hook = nbdev_clean_jupyter  # noqa: F821 (`c` is the config object Jupyter provides)
