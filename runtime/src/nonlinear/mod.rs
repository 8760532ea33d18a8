//! Two-party nonlinear protocols on additive shares (comparison, ReLU, truncation, ...).
