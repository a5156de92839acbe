//! *file* tests.
