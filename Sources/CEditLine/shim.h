// libedit (BSD-licensed, Debian's libedit-dev): line editing and history for `tinylm chat`.
#include <stdio.h>
#include <editline/readline.h>
