package train

import "io"

var errEOF = io.EOF
