//! Oblivious transfer: the `OtSource` abstraction and its cryprot-ot backends.
