//! Unit tests: setup tables (CoreDNS's setup_test.go cases as data), policies,
//! wire helpers, and the attempt loop against in-process upstreams.
