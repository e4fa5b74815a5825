//! A driver side for tests and fuzzing (filled in below).
