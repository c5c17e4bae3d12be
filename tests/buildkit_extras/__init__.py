"""Tests of wfe_buildkit's registry auth, secrets, SSH forwarding, cache options and TLS."""
