// A stand-in for the template's demo page script: the library tests serve it as a static file.
"use strict";
