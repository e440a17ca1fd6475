# batchd — build, test, run.
#
#   make            build/batchd
#   make test       every test: cmocka unit tests, libcurl integration tests,
#                   responses checked against openapi.yaml
#   make run        build and start batchd on 127.0.0.1:8080 with ./data
#   make asan / ubsan / valgrind   the tests under sanitizers / memcheck
#   make bench      benchmarks (bench/)
#   make clean
#
# V=1 shows the commands. Objects are rebuilt when the flags change.

CC ?= cc
BUILD ?= build
PKGS := libmicrohttpd jansson
SAN ?=
.DEFAULT_GOAL := all

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Missing Debian packages are installed first when we run as root, so the
# README's commands work on a fresh machine (scripts/deps.sh says what it does).
DEPS_STAMP := $(BUILD)/.deps-ok
$(DEPS_STAMP): scripts/deps.sh
	$(Q)mkdir -p $(BUILD)
	$(Q)sh scripts/deps.sh build
	$(Q)touch $@

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
        -Wmissing-prototypes -Wvla -Wformat=2 -Wundef -Wcast-align
OPT ?= -O2
CFLAGS_ALL = -std=gnu11 $(OPT) -g $(WARN) -D_GNU_SOURCE -Iservice -Iapi -Iworkers \
             $(PKG_CFLAGS) $(SAN) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lm -lpthread $(SAN) $(LDFLAGS)

SRC := $(wildcard service/*.c api/*.c workers/*.c)
LIB_SRC := $(filter-out service/main.c,$(SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/service/main.o
ALL_OBJ := $(LIB_OBJ) $(MAIN_OBJ)

UNIT_SRC := $(wildcard tests/unit/*/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
INTEG_BIN := $(INTEG_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
INTEG_LIB := $(filter-out $(INTEG_SRC),$(wildcard tests/integration/*.c))

FLAGS_FILE := $(BUILD)/.flags

.PHONY: all test unit integration contract run clean asan ubsan valgrind bench FORCE

all: $(BUILD)/batchd

# Rebuild everything when the compiler or flags change.
$(FLAGS_FILE): FORCE
	$(Q)mkdir -p $(BUILD)
	$(Q)echo '$(CC) $(CFLAGS_ALL) $(LDLIBS_ALL)' | cmp -s - $@ || echo '$(CC) $(CFLAGS_ALL) $(LDLIBS_ALL)' > $@

$(BUILD)/obj/%.o: %.c $(FLAGS_FILE) | $(DEPS_STAMP)
	$(Q)mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libbatchd.a: $(LIB_OBJ)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/batchd: $(MAIN_OBJ) $(BUILD)/libbatchd.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) -o $@ $(MAIN_OBJ) $(BUILD)/libbatchd.a $(LDLIBS_ALL)

$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libbatchd.a $(FLAGS_FILE)
	$(Q)mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -o $@ $< $(BUILD)/libbatchd.a -lcmocka $(LDLIBS_ALL)

$(BUILD)/tests/integration/%: tests/integration/%.c $(INTEG_LIB) $(wildcard tests/integration/*.h) $(FLAGS_FILE) | $(DEPS_STAMP)
	$(Q)mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -Itests/integration -o $@ $< $(INTEG_LIB) -lcurl $(LDLIBS_ALL)

test: unit integration contract

unit: $(UNIT_BIN)
	$(Q)sh tests/run_unit.sh $(UNIT_BIN)

integration: $(BUILD)/batchd $(INTEG_BIN)
	$(Q)BATCHD_BIN=$(abspath $(BUILD)/batchd) BATCHD_CONTRACT_LOG=$(abspath $(BUILD)/contract.jsonl) \
	  sh tests/run_integration.sh $(INTEG_BIN)

# Every response the integration tests saw, checked against openapi.yaml.
contract: integration
	$(Q)sh scripts/deps.sh node
	$(Q)node tests/contract/validate.mjs openapi.yaml $(BUILD)/contract.jsonl

run: $(BUILD)/batchd
	$(BUILD)/batchd --listen 127.0.0.1:8080 --data-dir ./data

asan:
	$(MAKE) BUILD=build/asan SAN='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all' OPT=-O1 test

ubsan:
	$(MAKE) BUILD=build/ubsan SAN='-fsanitize=undefined -fno-sanitize-recover=all' OPT=-O1 test

valgrind: $(UNIT_BIN)
	$(Q)VALGRIND=1 sh tests/run_unit.sh $(UNIT_BIN)

bench: $(BUILD)/batchd
	$(Q)sh bench/run.sh

clean:
	rm -rf build

-include $(ALL_OBJ:.o=.d)
-include $(UNIT_BIN:=.d)
