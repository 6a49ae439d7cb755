fn main(){ ridelake_core::x(); }
