"""The models a user has and adds: recognising them from their files (``detect``, ``gguf``), the
Hugging Face hub and cache (``hub``), other tools' stores (``stores``), config edits (``edits``),
the running daemon's side of adding and removing (``live``) and the listing (``listing``).

Nothing here is imported when the daemon starts except ``live``; heavy or optional libraries
(huggingface_hub, tomlkit, llama_cpp) are imported by the functions that use them.
"""
