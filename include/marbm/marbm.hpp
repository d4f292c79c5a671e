// Everything public in marbm.
#pragma once

#include "marbm/ais.hpp"
#include "marbm/checkpoint.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/held_out.hpp"
#include "marbm/image.hpp"
#include "marbm/model_io.hpp"
#include "marbm/mode.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"
#include "marbm/study.hpp"
#include "marbm/train.hpp"
