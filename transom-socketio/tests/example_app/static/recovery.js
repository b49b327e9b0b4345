// A stand-in for the template's recovery script: the library tests serve it as a static file.
"use strict";
