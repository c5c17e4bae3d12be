#!/bin/sh
echo "hello from the build context"
