/* module_file.c: finding and opening a backend's module (module_file.h). */
#include "module_file.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int module_exe_dir(char *buf, size_t len) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = '\0';
    return snprintf(buf, len, "%s", exe) < (int)len ? 0 : -1;
}

void module_slot_path(const module_slot *s, char *buf, size_t len) {
    char dir[PATH_MAX], installed[PATH_MAX + 64];
    if (s->use && s->use[0]) {
        snprintf(buf, len, "%s", s->use);
        return;
    }
    if (module_exe_dir(dir, sizeof dir) != 0) {
        snprintf(buf, len, "%s", s->file);
        return;
    }
    /* When neither is there the first is named, so the error says where it was expected. */
    snprintf(installed, sizeof installed, "%s/../lib/fleet/%s", dir, s->file);
    snprintf(buf, len, "%s/%s", dir, s->file);
    if (access(buf, F_OK) != 0 && access(installed, F_OK) == 0) snprintf(buf, len, "%s", installed);
}

static void slot_open(module_slot *s, const char *symbol,
                      const char *(*refusal)(const void *table, const char *name)) {
    char path[PATH_MAX + 64];
    module_slot_path(s, path, sizeof path);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(s->reason, sizeof s->reason, "cannot load the %s backend module: %s", s->what,
                 e ? e : path);
        return;
    }
    const void *table = dlsym(h, symbol);
    const char *why = table ? refusal(table, s->name) : NULL;
    if (!table || why) {
        if (why)
            snprintf(s->reason, sizeof s->reason, "%s backend module %s refused: %s", s->what, path,
                     why);
        else
            snprintf(s->reason, sizeof s->reason, "%s backend module %s refused: it exports no %s",
                     s->what, path, symbol);
        dlclose(h);
        return;
    }
    s->table = table;
}

const void *module_slot_open(module_slot *s, const char *symbol,
                             const char *(*refusal)(const void *table, const char *name)) {
    if (!s->tried) {
        s->tried = 1;
        slot_open(s, symbol, refusal);
    }
    return s->table;
}
