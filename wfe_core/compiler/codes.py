"""The stable diagnostic codes of the compiler, one constant per kind of problem.

Codes are part of the user-visible contract (scripts grep for them, docs/workflow-format.md
lists them), so a code is never reused for a different meaning. Plugins use their own codes.
"""

from __future__ import annotations

# The file itself.
UNREADABLE = "WFE001"
TOO_LARGE = "WFE002"
NOT_UTF8 = "WFE003"
YAML_SYNTAX = "WFE004"
EMPTY = "WFE005"
TOO_DEEP = "WFE006"
TOO_MANY_NODES = "WFE007"
DUPLICATE_KEY = "WFE008"
KEY_NOT_STRING = "WFE009"
UNSUPPORTED_TAG = "WFE010"

# Shapes and keys.
WRONG_TYPE = "WFE011"
UNKNOWN_KEY = "WFE012"
MISSING_KEY = "WFE013"
TOP_LEVEL = "WFE014"
WORKFLOW_ID = "WFE015"
VERSION = "WFE016"
INPUT = "WFE017"

# Steps.
STEP_NAME = "WFE020"
DUPLICATE_STEP = "WFE021"
STEP_KIND = "WFE022"
UNKNOWN_TYPE = "WFE023"
PLUGIN_BROKEN = "WFE024"
EMPTY_STEPS = "WFE025"
DURATION = "WFE026"
RETRY = "WFE027"

# Conditions.
CONDITION = "WFE030"
FIELD_PATH = "WFE031"

# References.
BAD_EXPRESSION = "WFE040"
UNKNOWN_INPUT = "WFE041"
UNKNOWN_STEP = "WFE042"
NOT_BEFORE = "WFE043"

# Executor config.
CONFIG_INVALID = "WFE050"
CONFIG_UNKNOWN_KEY = "WFE051"
CONFIG_MISSING_KEY = "WFE052"
PLUGIN_FAILED = "WFE053"

# Selecting a workflow of a file.
SELECT = "WFE060"

# A bug in the compiler itself (never expected; reported instead of a traceback).
INTERNAL = "WFE099"
