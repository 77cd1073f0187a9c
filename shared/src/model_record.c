/* model_record.c: the record of a model registered in Redis (model_record.h). */
#include "fleet/model_record.h"

#include <jansson.h>

char *fleet_model_record(long long created_ms, const char *registered_by, const char *description) {
    json_t *o = json_pack("{s:I, s:s}", "created_ms", (json_int_t)created_ms, "registered_by",
                          registered_by ? registered_by : "");
    if (!o) return NULL;
    if (description && description[0])
        json_object_set_new(o, "description", json_string(description));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
