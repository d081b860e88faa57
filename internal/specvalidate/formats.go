package specvalidate

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// dateTime matches the date-times KSeF writes and reads: RFC 3339 with any number of fractional
// digits, and with an offset, "Z", or (in ExceptionInfo.timestamp and in query filters meaning
// Polish time) no offset at all.
var dateTime = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))?$`)

// checkDateTime validates the "date-time" format. Its errors never quote the value.
func checkDateTime(s string) error {
	m := dateTime.FindStringSubmatch(s)
	if m == nil {
		return errors.New("want an RFC 3339 date-time YYYY-MM-DDThh:mm:ss[.fraction][Z or ±hh:mm]")
	}
	if _, err := time.Parse("2006-01-02T15:04:05", m[1]); err != nil {
		return errors.New("date or time of day out of range")
	}
	if m[4] != "" {
		h, _ := strconv.Atoi(m[4])
		mm, _ := strconv.Atoi(m[5])
		if h > 23 || mm > 59 {
			return errors.New("offset out of range")
		}
	}
	return nil
}

// checkBase64 validates the "byte" format as standard Base64 with padding (RFC 4648 §4): the
// alphabet A-Z a-z 0-9 + /, a length that is a multiple of 4, and '=' only as the final one or
// two characters. Its errors never quote the value.
func checkBase64(s string) error {
	if len(s)%4 != 0 {
		return fmt.Errorf("want standard Base64 with padding: length %d is not a multiple of 4", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
		case c == '=' && (i == len(s)-1 || (i == len(s)-2 && s[len(s)-1] == '=')):
		default:
			return fmt.Errorf("want standard Base64 with padding: unexpected character at offset %d", i)
		}
	}
	return nil
}
