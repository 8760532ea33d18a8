//! Channels that carry protocol messages, with byte and round counters.
