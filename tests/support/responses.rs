//! Canned token-endpoint responses shared by the test binaries (to be filled as the tests move
//! here).
