/* registry.c: the table of models compiled into fleet-worker. A new built-in model adds
 * one line here and one source file to worker/CMakeLists.txt. */
#include <string.h>

#include "models.h"

static const fleet_model *const builtins[] = {
    &wk_model_echo,
    &wk_model_embed,
    &wk_model_sleep,
};

const fleet_model *wk_model_builtin(const char *name)
{
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (name && strcmp(builtins[i]->name, name) == 0)
            return builtins[i];
    return NULL;
}

const char *wk_model_builtin_names(void)
{
    return "echo|embed|sleep";
}
