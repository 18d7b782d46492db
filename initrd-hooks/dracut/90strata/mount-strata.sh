#!/bin/sh
# dracut mount hook: assemble the overlay root on $NEWROOT from the commit
# named on the command line. dracut moves /run into the new root itself.
if [ "$(getarg root=)" = strata ] && ! ismounted "$NEWROOT"; then
    _strata_path=$PATH
    PATH=/lib/strata/bin:$PATH
    STRATA_LIB_DIR=/lib/strata
    . /lib/strata/strata-root.sh
    strata_boot "$NEWROOT"
    echo "strata: switch_root at $(strata_uptime)"
    PATH=$_strata_path
fi
