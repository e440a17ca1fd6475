# libFuzzer targets (tests/fuzz/), included by the Makefile.
#
#   make fuzz        every target for FUZZ_SECONDS (default 60), two at a time
#   make fuzz-ci     every target for ~20 s: the regression check CI runs
#   make fuzz-build  only build them (build/fuzz/bin/)
#
# The targets and the service objects they link are built with clang,
# -fsanitize=fuzzer,address,undefined -O1 -g, in build/fuzz (a sub-make of
# this Makefile with BUILD=build/fuzz, so the usual rules and the flags
# check apply). tests/fuzz/run.sh runs them; any crash fails the goal.

FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 20
FUZZ_BUILD := build/fuzz
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/%.c=%)

.PHONY: fuzz fuzz-ci fuzz-build fuzz-bins

fuzz: fuzz-build
	$(Q)sh tests/fuzz/run.sh $(FUZZ_BUILD)/bin $(FUZZ_SECONDS)

fuzz-ci: fuzz-build
	$(Q)sh tests/fuzz/run.sh $(FUZZ_BUILD)/bin $(FUZZ_CI_SECONDS)

fuzz-build:
	$(Q)sh scripts/deps.sh sanitizers
	$(Q)$(MAKE) -j2 --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 \
	  SAN='$(FUZZ_SAN)' fuzz-bins

# Inside the sub-make: the library objects without the dashboard's generated
# assets (no fuzz target reaches them), then one program per target.
FUZZ_LIB := $(BUILD)/libfuzzcore.a
FUZZ_BIN := $(FUZZ_NAMES:%=$(BUILD)/bin/%)

fuzz-bins: $(FUZZ_BIN)

$(FUZZ_LIB): $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/bin/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIB) $(FLAGS_FILE)
	$(Q)mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) $(LDLIBS_ALL)
