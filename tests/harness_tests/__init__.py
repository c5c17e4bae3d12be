"""Smoke tests of the real-daemon harness: each daemon really works, and nothing leaks."""
