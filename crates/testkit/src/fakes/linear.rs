//! Fake linear server (see the module docs of `fakes`).
