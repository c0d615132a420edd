"""What the daemon's HTTP faces share (the API's routes and dialects, the web UI): the error table
(:mod:`.errors`), the request body reader (:mod:`.body`), the key a request presents
(:mod:`.client_key`) and the web UI's sign-in sessions (:mod:`.sessions`). The faces import it;
it imports none of them."""
