package workerbench

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/patrol-dev/patrol/internal/proctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(proctest.Wrap(m)) }
