//! placeholder: swtpm harness (being written)
