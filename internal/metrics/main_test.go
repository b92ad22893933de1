package metrics_test

import (
	"testing"

	"github.com/patrol-dev/patrol/internal/etcdtest"
)

func TestMain(m *testing.M) { etcdtest.Main(m) }
