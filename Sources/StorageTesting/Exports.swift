// Helpers every test target uses (child processes, waiting for a condition, files, loopback ports).
@_exported import TestSupport
