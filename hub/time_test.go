package hub

import "time"

var zeroTime time.Time
