//! Fake github server (see the module docs of `fakes`).
