//! Fake jira server (see the module docs of `fakes`).
