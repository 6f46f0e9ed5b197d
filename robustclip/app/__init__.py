"The application: the `robustclip` command, the reproduction pipeline and export; the library never imports it."
