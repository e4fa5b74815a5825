//! Export backends, each behind a cargo feature. Filled in by later work.
