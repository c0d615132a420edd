"""The models a user has and adds: recognising them from their files (``detect``, ``gguf``), the
Hugging Face hub and cache (``hub``), other tools' stores (``stores``), config edits (``edits``),
the running daemon's side of adding and removing (``live``) and the listing (``listing``).

These modules are light: huggingface_hub, tomlkit and llama_cpp are imported by the functions
that use them, so starting the daemon (which builds ``live.ModelCatalog``) imports none of them.
"""
