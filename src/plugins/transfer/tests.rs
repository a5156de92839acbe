//! *transfer* tests.
