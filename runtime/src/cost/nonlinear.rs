//! Exact bytes, rounds and OT counts of the nonlinear protocols.
