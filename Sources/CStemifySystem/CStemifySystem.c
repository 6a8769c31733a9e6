#include "CStemifySystem.h"
