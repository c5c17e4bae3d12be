#!/bin/sh
# The demo app's test suite: runs inside the built image with containerd.
set -u
passed=0
failed=0
check() {
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok - $1"
  else failed=$((failed + 1)); echo "not ok - $1: got '$2', want '$3'" >&2; fi
}
check "greets by name" "$(/app/greet.sh wfe)" "hello, wfe"
check "greets the world by default" "$(/app/greet.sh)" "hello, world"
check "build step ran" "$(cat /app/BUILD_INFO)" "hello, build"
echo "##wfe[output passed=$passed]"
echo "failed=$failed" >> "${WFE_OUTPUT:-/dev/null}"
[ "$failed" -eq 0 ]
