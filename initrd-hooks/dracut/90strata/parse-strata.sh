#!/bin/sh
# dracut cmdline hook: root=strata means "the strata mount hook assembles
# the root", so dracut must not wait for a root block device. (No
# initqueue/finished hook: the root only exists after the mount hook, which
# runs after the initqueue.)
if [ "$(getarg root=)" = strata ]; then
    # shellcheck disable=SC2034  # read by dracut's init
    rootok=1
fi
