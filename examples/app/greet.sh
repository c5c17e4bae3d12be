#!/bin/sh
# greet NAME: the demo app's whole behaviour.
echo "hello, ${1:-world}"
