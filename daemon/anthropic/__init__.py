"""Anthropic's Messages API over Loom's chat calls: the request translated into a chat request
(:mod:`.translate`), the chunks back into a message or its event stream (:mod:`.stream`), and
errors in Anthropic's shape (:mod:`.errors`). The routes are :mod:`loom.daemon.api.messages`."""
